"""Names fixed by the dataset's schema, said once."""

CATEGORIES = ("genre", "mood", "instrument", "tempo")
SPLITS = ("train", "validation", "test")
SAMPLING_RATE = 32000  # of the published audio (MusicGen's and the renderer's)

CITATION = """@article{sienkiewicz2026conceptcaps,
  title   = {ConceptCaps: a Distilled Concept Dataset for Interpretability in Music Models},
  author  = {Sienkiewicz, Bruno and Neumann, {\\L}ukasz and Modrzejewski, Mateusz},
  journal = {arXiv preprint arXiv:2601.14157},
  year    = {2026}
}"""
DESCRIPTION = (
    "Music clips with captions and attribute lists from a fixed 200-concept taxonomy (genre, mood, "
    "instrument, tempo), with clean positive and negative sets per concept for TCAV and probing."
)
# The captions and attribute lists derive from MusicCaps (CC BY-SA 4.0), whose ShareAlike term carries over to
# adaptations; the paper's CC BY 4.0 is available as a flag for a dataset that does not derive from it.
DATA_LICENSE = "cc-by-sa-4.0"
