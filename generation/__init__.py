"""Generation: sample attribute lists, write captions, synthesize audio, score it."""
