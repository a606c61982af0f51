"""The dataset card: template, statistics, plots."""
