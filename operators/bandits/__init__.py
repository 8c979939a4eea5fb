"""Contextual bandits: policies over one interface, featurisation, the delayed-reward join and
off-policy evaluation. See ``operators.bandits.base`` for the policy contract."""

from operators.bandits.base import POLICIES, Policy
from operators.bandits.epsilon_greedy import EpsilonGreedy
from operators.bandits.featurize import FeatureSpec, Featurizer
from operators.bandits.lints import LinTS
from operators.bandits.linucb import LinUCB
from operators.bandits.reward_join import RewardJoin

__all__ = [
    "POLICIES",
    "EpsilonGreedy",
    "FeatureSpec",
    "Featurizer",
    "LinTS",
    "LinUCB",
    "Policy",
    "RewardJoin",
]
