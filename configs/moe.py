"""moe: the base model with a mixture of 8 SwiGLU experts (top-2) in every temporal block.

Each expert has room for 1.5 times its even share of a sequence's tokens (model.expert_capacity;
models/moe.py), so training computes about 1.5x the routed experts' FLOPs, not all eight.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.name = "moe"
  c.model.num_experts = 8
  c.model.experts_per_token = 2
  c.model.expert_capacity = 1.5
  c.model.d_ff = 768
  return c
