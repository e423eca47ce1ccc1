"""Rewards from unit-test feedback: pure functions, no Ray, DeepSpeed or transformers."""

from reward.feedback import (
    OUTCOME_CLASSES,
    adaptive_reward,
    coarse_reward,
    error_scope,
    outcome_class,
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
    "OUTCOME_CLASSES", "adaptive_reward", "coarse_reward", "error_scope",
    "outcome_class", "sequence_reward",
    "SampleFeedback", "SampleReward", "baselines", "group_rewards", "line_span",
    "line_token_mask", "token_rewards",
]
