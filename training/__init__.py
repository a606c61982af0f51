"""Model training: the attribute β-VAE and the caption LLM."""
