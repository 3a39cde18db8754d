"""Pretrained weights, one concern a file; ``jaxreid.backbones.pretrained`` is
the public face (the mapping rules are described there)."""
