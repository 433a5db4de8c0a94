"""ACT: Action Chunking with Transformers (Zhao et al., RSS 2023, arXiv 2304.13705)."""

from aloha_bench.policies.act.config import ACTConfig, load_config
from aloha_bench.policies.act.policy import ACTPolicy

__all__ = ["ACTConfig", "ACTPolicy", "load_config"]
