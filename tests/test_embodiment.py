import numpy as np
import pytest

from aloha_bench import embodiment, keys


def test_order_and_names():
    assert embodiment.STATE_DIM == 12
    assert embodiment.STATE_NAMES[0] == "left_shoulder_pan"
    assert embodiment.STATE_NAMES[11] == "right_gripper"
    assert embodiment.GRIPPER_INDICES == (5, 11)
    assert embodiment.state_index("right", "elbow_flex") == 8
    assert embodiment.arm_slice("right") == slice(6, 12)


def test_limits_match_the_published_ranges_in_degrees():
    low = np.degrees(embodiment.STATE_LOW_RAD[:6])
    high = np.degrees(embodiment.STATE_HIGH_RAD[:6])
    np.testing.assert_allclose(low, [-110, -100, -97, -95, -157, -10])
    np.testing.assert_allclose(high, [110, 100, 97, 95, 163, 100])


def test_home_inside_limits_and_clip():
    assert np.all(embodiment.HOME_STATE_RAD >= embodiment.STATE_LOW_RAD)
    assert np.all(embodiment.HOME_STATE_RAD <= embodiment.STATE_HIGH_RAD)
    clipped = embodiment.clip_to_limits(np.full(12, 10.0))
    np.testing.assert_array_equal(clipped, embodiment.STATE_HIGH_RAD)


def test_control_timing():
    assert embodiment.SUBSTEPS_PER_CONTROL * embodiment.PHYSICS_DT_S == pytest.approx(0.02)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown arm"):
        embodiment.state_index("middle", "gripper")
    with pytest.raises(ValueError, match="unknown camera"):
        keys.image_key("side")
