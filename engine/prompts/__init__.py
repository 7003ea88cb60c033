"""A1111 prompt syntax: emphasis weights, prompt-editing schedules, `AND` parts and extra-network tags.

Everything here is pure text processing, ported from A1111 v1.10.1 `modules/prompt_parser.py` and
`modules/extra_networks.py`; tokenizing and encoding live with the pipeline.
"""

from engine.prompts.and_split import split_and
from engine.prompts.attention import parse_prompt_attention
from engine.prompts.editing import get_learned_conditioning_prompt_schedules, prompt_schedule
from engine.prompts.extra_networks import (
    ExtraNetworkCall,
    LoraCall,
    lora_call,
    parse_extra_networks,
    read_loras,
    remove_lora,
)

__all__ = [
    "ExtraNetworkCall",
    "LoraCall",
    "get_learned_conditioning_prompt_schedules",
    "lora_call",
    "parse_extra_networks",
    "parse_prompt_attention",
    "prompt_schedule",
    "read_loras",
    "remove_lora",
    "split_and",
]
