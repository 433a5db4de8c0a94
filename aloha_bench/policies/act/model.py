"""The ACT network (Zhao et al., RSS 2023, arXiv 2304.13705, Fig. 4), top to bottom:

position embeddings -> attention and transformer blocks -> ResNet18 backbone -> ACT.

ACT is a conditional VAE. Training: a transformer encoder reads [CLS, joint state, K actions] and
gives the posterior of a 32-D style variable z. The policy (the CVAE "decoder") reads z, the joint
state and the camera features through a transformer encoder, and K learned queries cross-attend to
that memory (DETR) to predict the next K actions at once. Inference: z = 0, the prior's mean.

Blocks are post-norm, as DETR and the original ACT code (``normalize_before=False``) are: the
paper's hyperparameters were tuned for that placement. Positional embeddings are added to the
queries and keys of every attention layer and never to the values (DETR).

Shapes: B batch, K chunk size, D model width, N cameras, S encoder tokens, L latent size.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from aloha_bench import embodiment
from aloha_bench.policies.act.config import BACKBONE_STRIDE, TORCHVISION_WEIGHTS, ACTConfig

RESNET18_CHANNELS = 512


# ------------------------------------------------------------------------------------------------
# Position embeddings
# ------------------------------------------------------------------------------------------------
def sinusoid_table(n_positions: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sine/cosine table (Vaswani et al.) of the CVAE encoder's tokens: (n, dim)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (n, 1)
    rate = 10000.0 ** (-2.0 * (torch.arange(dim) // 2) / dim)  # (dim,)
    angle = position * rate  # (n, dim)
    table = torch.where(torch.arange(dim) % 2 == 0, angle.sin(), angle.cos())
    return table.float()


def sine_embedding_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """DETR's ``PositionEmbeddingSine`` (normalized to 2 pi) of a feature map: (height*width, dim).

    Half of the channels encode the row, half the column, each as interleaved sin/cos pairs.
    """
    half = dim // 2
    scale, eps = 2 * math.pi, 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float64) / (height + eps) * scale  # (h,)
    x = torch.arange(1, width + 1, dtype=torch.float64) / (width + eps) * scale  # (w,)
    rate = 10000.0 ** (2 * (torch.arange(half) // 2) / half)  # (half,)

    def encode(v: torch.Tensor) -> torch.Tensor:
        angle = v[:, None] / rate  # (n, half)
        return torch.stack((angle[:, 0::2].sin(), angle[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, half)  # (h, w, half)
    pos_x = encode(x)[None, :, :].expand(height, width, half)  # (h, w, half)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, dim).float()  # (h*w, D)


def feature_map_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of ResNet18's last feature map: each of its 5 stride-2 stages rounds up."""
    return tuple(math.ceil(side / BACKBONE_STRIDE) for side in image_size)


def n_encoder_tokens(config: ACTConfig) -> int:
    """Tokens the observation encoder attends over.

    One for z and one for the joint state, then one for the environment state (state mode) or
    h*w per camera (pixels): 4 cameras at 480x640 give 2 + 4*15*20 = 1202, the paper's count.
    """
    if config.obs_mode == "state":
        return 3
    height, width = feature_map_size(config.image_size)
    return 2 + len(config.cameras) * height * width


# ------------------------------------------------------------------------------------------------
# Transformer blocks
# ------------------------------------------------------------------------------------------------
def _keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool mask, True with probability 1 - p, from torch's default CPU generator.

    ``bernoulli_`` (what ``F.dropout`` runs) draws one double per element on one thread: on a
    2-core CPU it took about a third of ACT's training forward pass. Here one 64-bit draw gives
    four 16-bit lanes; each lane keeps its low 15 bits (``random_`` leaves the top bit of an int64
    zero, so the fourth lane has only 15), and an element is kept when they fall below
    (1 - p) * 2^15: p is honoured to 1/32768. Seeded and resumed with torch's RNG state, like
    ``F.dropout``.
    """
    n = math.prod(shape)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n]
    return bits.bitwise_and_(0x7FFF).lt_(round((1.0 - p) * 32768)).view(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (Srivastava et al. 2014), as ``F.dropout``, with a cheaper CPU mask.

    On CUDA, and in eval mode, this is ``F.dropout`` itself.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, training=True)
    scale = torch.tensor(1.0 / (1.0 - p), dtype=x.dtype)
    return x * _keep_mask(x.shape, p).to(x.dtype).mul_(scale)


class Dropout(nn.Module):
    """``nn.Dropout`` on :func:`dropout` (same semantics, faster mask on CPU)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class Attention(nn.Module):
    """Multi-head attention (Vaswani et al.) with dropout on the attention weights, as DETR's.

    Inference runs ``F.scaled_dot_product_attention`` (fused kernels). Training with dropout runs
    the explicit product, softmax and :func:`dropout`: on CPU, SDPA with dropout falls back to an
    unfused path with ``bernoulli_`` masks, and its fused bf16 backward is slower than two small
    batched matrix products at ACT's sizes (measured with ``aloha-bench bench train``).
    """

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query (B, Sq, D), key and value (B, Sk, D), mask (B, 1, 1, Sk) True = attend."""
        batch, n_query, dim = query.shape
        n_key, heads = key.shape[1], self.n_heads
        q = self.q_proj(query).view(batch, n_query, heads, dim // heads).transpose(1, 2)
        k = self.k_proj(key).view(batch, n_key, heads, dim // heads).transpose(1, 2)
        v = self.v_proj(value).view(batch, n_key, heads, dim // heads).transpose(1, 2)
        # q: (B, H, Sq, D/H); k, v: (B, H, Sk, D/H)
        if self.training and self.dropout > 0.0 and query.device.type == "cpu":
            scores = (q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)  # (B, H, Sq, Sk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = dropout(scores.softmax(dim=-1), self.dropout, True)  # (B, H, Sq, Sk)
            y = weights.to(v.dtype) @ v  # (B, H, Sq, D/H)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )  # (B, H, Sq, D/H)
        y = y.transpose(1, 2).reshape(batch, n_query, dim)  # (B, Sq, D)
        return self.out_proj(y)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Post-norm self-attention block (DETR's ``TransformerEncoderLayer``)."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        dim = config.dim_model
        self.attn = Attention(dim, config.n_heads, config.dropout)
        self.ffn = FeedForward(dim, config.dim_feedforward, config.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = Dropout(config.dropout), Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor | None = None,
        first_token_only: bool = False,
    ) -> torch.Tensor:
        """x (B, S, D), pos (1 or B, S, D) -> (B, S, D), or (B, 1, D) with ``first_token_only``.

        ``first_token_only`` computes the output of the first token alone: exact in a post-norm
        block (every token is normalized on its own), and the CVAE encoder's last layer needs only
        its CLS token, which saves that layer's feed-forward on the K + 1 other tokens.
        """
        qk = x + pos  # (B, S, D)
        query, residual = (qk[:, :1], x[:, :1]) if first_token_only else (qk, x)
        x = self.norm1(residual + self.drop1(self.attn(query, qk, x, mask)))
        return self.norm2(x + self.drop2(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Post-norm self-attention, cross-attention and feed-forward (DETR's decoder layer)."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        dim = config.dim_model
        self.self_attn = Attention(dim, config.n_heads, config.dropout)
        self.cross_attn = Attention(dim, config.n_heads, config.dropout)
        self.ffn = FeedForward(dim, config.dim_feedforward, config.dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim) for _ in range(3))
        self.drop1, self.drop2, self.drop3 = (Dropout(config.dropout) for _ in range(3))

    def forward(
        self,
        x: torch.Tensor | None,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
    ) -> torch.Tensor:
        """x (B, K, D), query_pos (1, K, D), memory (B, S, D), memory_pos (1, S, D) -> (B, K, D).

        ``x = None`` stands for DETR's all-zero input of the first layer (see
        :meth:`_self_attn_of_zeros`)."""
        if x is None:
            x = self.drop1(self._self_attn_of_zeros(query_pos, memory.shape[0]))
            x = self.norm1(x)
        else:
            q = x + query_pos
            x = self.norm1(x + self.drop1(self.self_attn(q, q, x)))
        x = self.norm2(x + self.drop2(self.cross_attn(x + query_pos, memory + memory_pos, memory)))
        return self.norm3(x + self.drop3(self.ffn(x)))

    def _self_attn_of_zeros(self, query_pos: torch.Tensor, batch: int) -> torch.Tensor:
        """Self-attention of the first decoder layer, whose input is all zeros (DETR): (B, K, D).

        With x = 0 the queries and keys are ``query_pos`` alone, the same for every sample, and
        every value is ``v_proj``'s bias, so the weighted sum of values is (sum of the weights)
        x bias. Projections and scores are computed once instead of per sample: exact (up to
        summation order), and it spares ~8% of a `cpu_state` training step's FLOPs. The dropout
        on the weights is drawn per sample as in :class:`Attention`, which is why their sum is
        still needed; without dropout it is 1 and one output row serves the whole batch.
        """
        attn = self.self_attn
        _, chunk, dim = query_pos.shape
        heads = attn.n_heads
        value = attn.v_proj.bias.view(1, heads, 1, dim // heads)  # (1, H, 1, D/H)
        if attn.training and attn.dropout > 0.0:
            q = attn.q_proj(query_pos).view(1, chunk, heads, dim // heads).transpose(1, 2)
            k = attn.k_proj(query_pos).view(1, chunk, heads, dim // heads).transpose(1, 2)
            scores = (q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)  # (1, H, K, K)
            weights = scores.softmax(dim=-1).expand(batch, heads, chunk, chunk)
            kept = dropout(weights, attn.dropout, True).sum(dim=-1, keepdim=True)  # (B, H, K, 1)
            y = kept.to(value.dtype) * value  # (B, H, K, D/H)
            y = y.transpose(1, 2).reshape(batch, chunk, dim)  # (B, K, D)
            return attn.out_proj(y)
        row = attn.out_proj(attn.v_proj.bias)  # (D,): every query's output
        return row.expand(batch, chunk, dim)


# ------------------------------------------------------------------------------------------------
# Vision backbone
# ------------------------------------------------------------------------------------------------
def _norm_layer(kind: str) -> Callable[[int], nn.Module]:
    if kind == "frozen_batchnorm":
        return FrozenBatchNorm2d
    # diffusion_policy's from-scratch recipe: GroupNorm with 16 channels per group.
    return lambda channels: nn.GroupNorm(channels // 16, channels)


class BackboneWeightsError(RuntimeError):
    """ImageNet weights for the backbone could not be had (offline, or a damaged file)."""


def load_backbone_weights(source: str) -> dict[str, torch.Tensor]:
    """ResNet18 ImageNet weights from a local file, or from torchvision's download.

    Raises:
        BackboneWeightsError: the download failed (one line, no chained traceback: being offline
            is an expected condition with a known fix).
        FileNotFoundError: a local path that does not exist.
    """
    if source == TORCHVISION_WEIGHTS:
        weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
        # torch.hub announces the download on stdout; shown (on stderr, so stdout stays JSON
        # with --json) only if the download succeeds.
        notes = io.StringIO()
        try:
            with contextlib.redirect_stdout(notes), contextlib.redirect_stderr(notes):
                state = weights.get_state_dict(progress=False)
        except Exception as err:
            reason = str(getattr(err, "reason", err))
            raise BackboneWeightsError(
                f"downloading torchvision's ResNet18 ImageNet weights failed ({reason}); on a "
                f"machine with internet, download {weights.url} and pass its local path as "
                "pretrained_backbone_path (or copy it into torch's cache, ~/.cache/torch/hub/"
                "checkpoints/)"
            ) from None
        sys.stderr.write(notes.getvalue())
        return state
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained_backbone_path {path} does not exist; pass a local .pth or .safetensors "
            "ResNet18 state dict, 'torchvision' to download, or none for random initialization"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


class Backbone(nn.Module):
    """ResNet18 without its average pool and classifier: (B, 3, H, W) -> (B, 512, H/32, W/32)."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18(
            weights=None, norm_layer=_norm_layer(config.backbone_norm)
        )
        if config.pretrained_backbone_path is not None:
            resnet.load_state_dict(load_backbone_weights(config.pretrained_backbone_path))
        self.body = nn.Sequential(*list(resnet.children())[:-2])
        # oneDNN's convolutions run fastest on NHWC; the policy hands images over in that layout.
        self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images.contiguous(memory_format=torch.channels_last))


# ------------------------------------------------------------------------------------------------
# ACT
# ------------------------------------------------------------------------------------------------
class ACT(nn.Module):
    """Action Chunking with Transformers on normalized inputs.

    Args:
        config: architecture (``dim_model``, layers, chunk size, cameras, image size...).
        environment_state_dim: size of ``observation.environment_state``: the input in state
            mode, the auxiliary head's output in pixels mode with ``aux_state_weight`` > 0;
            else 0.
    """

    def __init__(self, config: ACTConfig, environment_state_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        dim, chunk = config.dim_model, config.chunk_size
        state_dim, action_dim = embodiment.STATE_DIM, embodiment.ACTION_DIM

        # CVAE encoder (paper Fig. 4 left): [CLS, joint state, a_t..a_t+K-1] -> (mu, log var).
        if config.use_vae:
            self.vae_cls = nn.Embedding(1, dim)
            self.vae_state_proj = nn.Linear(state_dim, dim)
            self.vae_action_proj = nn.Linear(action_dim, dim)
            self.vae_encoder = nn.ModuleList(
                EncoderLayer(config) for _ in range(config.n_vae_encoder_layers)
            )
            self.vae_latent_proj = nn.Linear(dim, 2 * config.latent_dim)
            self.register_buffer(
                "vae_pos", sinusoid_table(chunk + 2, dim)[None], persistent=False
            )  # (1, K+2, D)

        # Observation encoder (Fig. 4 right): z, joint state, then image features or objects.
        self.latent_proj = nn.Linear(config.latent_dim, dim)
        self.state_proj = nn.Linear(state_dim, dim)
        n_1d_tokens = 2
        if config.obs_mode == "pixels":
            self.backbone = Backbone(config)
            self.image_proj = nn.Conv2d(RESNET18_CHANNELS, dim, kernel_size=1)
            self.image_shape = (len(config.cameras), 3, *config.image_size)
            height, width = feature_map_size(config.image_size)
            self.register_buffer(
                "image_pos",
                sine_embedding_2d(height, width, dim).repeat(len(config.cameras), 1)[None],
                persistent=False,
            )  # (1, N*h*w, D): every camera shares one 2-D embedding, as in ACT
            if config.aux_state_weight > 0:
                if environment_state_dim < 1:
                    raise ValueError("aux_state_weight > 0 needs environment_state_dim >= 1")
                # EXTENSION (not in the paper): a linear read-out of the objects' poses from the
                # flattened feature maps. Flattened, not pooled: the tokens' values carry no
                # position (positions enter only queries and keys), so a pooled read-out could
                # not say where the cube is; one weight per map cell can.
                self.aux_state_head = nn.Linear(
                    len(config.cameras) * height * width * dim, environment_state_dim
                )
        else:
            if environment_state_dim < 1:
                raise ValueError("state mode needs environment_state_dim >= 1")
            self.env_state_proj = nn.Linear(environment_state_dim, dim)
            n_1d_tokens = 3
        self.token_pos = nn.Embedding(n_1d_tokens, dim)  # learned, for the non-image tokens
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))

        # Decoder: K learned queries cross-attend to the encoder's output (DETR).
        self.queries = nn.Embedding(chunk, dim)
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.action_head = nn.Linear(dim, action_dim)

        # DETR initializes its transformer's matrices with Xavier-uniform.
        for blocks in (self.encoder, self.decoder, getattr(self, "vae_encoder", nn.ModuleList())):
            for p in blocks.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def encode_posterior(
        self, state: torch.Tensor, actions: torch.Tensor, action_is_pad: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CVAE encoder: state (B, 12), actions (B, K, 12) -> mu, log_var (B, L) each.

        Padded steps past the episode's end are masked out of the attention, so what the
        episode did not contain cannot shape z.
        """
        batch = state.shape[0]
        cls = self.vae_cls.weight.expand(batch, 1, -1)  # (B, 1, D)
        tokens = torch.cat(
            (cls, self.vae_state_proj(state)[:, None], self.vae_action_proj(actions)), dim=1
        )  # (B, K+2, D)
        mask = None
        if action_is_pad is not None:
            keep = torch.ones(batch, 2, dtype=torch.bool, device=state.device)
            mask = torch.cat((keep, ~action_is_pad), dim=1)[:, None, None, :]  # (B, 1, 1, K+2)
        last = len(self.vae_encoder) - 1
        for i, layer in enumerate(self.vae_encoder):
            tokens = layer(tokens, self.vae_pos, mask, first_token_only=i == last)
        mu, log_var = self.vae_latent_proj(tokens[:, 0]).chunk(2, dim=-1)  # (B, L) each
        # fp32 under bf16 autocast too: the KL term and the sampled z need the precision.
        return mu.float(), log_var.float()

    def forward(
        self,
        state: torch.Tensor,
        latent: torch.Tensor,
        images: torch.Tensor | None = None,
        environment_state: torch.Tensor | None = None,
        predict_environment_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict a chunk of normalized actions.

        Args:
            state: normalized joint state (B, 12).
            latent: z (B, L): a posterior sample in training, zeros at inference.
            images: normalized images (B, N, 3, H, W) (pixels mode).
            environment_state: normalized object state (B, E) (state mode).
            predict_environment_state: also return the auxiliary head's normalized object
                state (B, E) read from the image features (needs ``aux_state_weight`` > 0).

        Returns:
            Normalized actions (B, K, 12), or (actions, object state (B, E)).
        """
        if predict_environment_state and not hasattr(self, "aux_state_head"):
            raise ValueError(
                "predict_environment_state needs the auxiliary head: obs_mode = 'pixels' and "
                "aux_state_weight > 0"
            )
        batch, dim = state.shape[0], self.config.dim_model
        tokens = [self.latent_proj(latent), self.state_proj(state)]  # 2 x (B, D)
        if self.config.obs_mode == "state":
            tokens.append(self.env_state_proj(environment_state))
        memory = torch.stack(tokens, dim=1)  # (B, T, D), T = 2 or 3
        pos = self.token_pos.weight[None]  # (1, T, D)
        if self.config.obs_mode == "pixels":
            if images.shape[1:] != self.image_shape:
                raise ValueError(
                    f"images of shape {tuple(images.shape[1:])} (N, 3, H, W) do not match the "
                    f"config's cameras and image_size {self.image_shape}"
                )
            # One backbone pass over every camera of every sample (the backbone is shared).
            features = self.image_proj(self.backbone(images.flatten(0, 1)))  # (B*N, D, h, w)
            # NHWC memory makes this permute free.
            features = features.permute(0, 2, 3, 1).reshape(batch, -1, dim)  # (B, N*h*w, D)
            if predict_environment_state:
                with torch.autocast(device_type=features.device.type, enabled=False):
                    predicted_state = self.aux_state_head(features.flatten(1).float())  # (B, E)
            memory = torch.cat((memory, features), dim=1)  # (B, S, D)
            pos = torch.cat((pos, self.image_pos), dim=1)  # (1, S, D)
        for layer in self.encoder:
            memory = layer(memory, pos)  # (B, S, D)

        query_pos = self.queries.weight[None]  # (1, K, D)
        # DETR's decoder starts from zeros; None lets the first layer skip work on them.
        x = None
        # The original code ran all 7 layers but predicted from the first one's output.
        layers = self.decoder[:1] if self.config.use_first_decoder_layer_only else self.decoder
        for layer in layers:
            x = layer(x, query_pos, memory, pos)  # (B, K, D)
        # The head runs in fp32 even under bf16 autocast: its output is the action itself, and
        # bf16's 8-bit mantissa would quantize joint targets to ~0.4 % of their spread.
        with torch.autocast(device_type=x.device.type, enabled=False):
            actions = self.action_head(self.decoder_norm(x.float()))  # (B, K, 12)
        if predict_environment_state:
            return actions, predicted_state
        return actions
