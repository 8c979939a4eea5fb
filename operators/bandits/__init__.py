"""Contextual bandits: policies over one interface, featurisation, the delayed-reward join and
off-policy evaluation. See ``operators.bandits.base`` for the policy contract."""

from eddy.operators.bandits.base import POLICIES, Policy
from eddy.operators.bandits.epsilon_greedy import EpsilonGreedy
from eddy.operators.bandits.featurize import FeatureSpec, Featurizer
from eddy.operators.bandits.lints import LinTS
from eddy.operators.bandits.linucb import LinUCB
from eddy.operators.bandits.reward_join import RewardJoin

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
