"""Flux.1 (dev, schnell and their finetunes), Forge's way: the BFL file layout read by tensor shapes, Forge's sigma
table and text conditioning (T5 with A1111 emphasis, CLIP-L's pooled vector), distilled guidance."""
