"""Evaluation: attribute-model report, caption metrics, CLAP/FAD, TCAV."""
