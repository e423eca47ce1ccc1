"""Rewards from unit-test feedback: pure functions, no Ray, DeepSpeed or transformers."""

from reward.feedback import (
    RewardConfig,
    adaptive_reward,
    coarse_reward,
    error_scope,
    sequence_reward,
)
from reward.tokens import (
    SampleFeedback,
    SampleReward,
    baselines,
    group_rewards,
    line_span,
    line_token_mask,
    token_rewards,
)

__all__ = [
    "RewardConfig", "adaptive_reward", "coarse_reward", "error_scope", "sequence_reward",
    "SampleFeedback", "SampleReward", "baselines", "group_rewards", "line_span",
    "line_token_mask", "token_rewards",
]
