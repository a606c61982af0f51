"""Taxonomy, MusicCaps distillation, splits and concept sets, assembly and Hub push."""
