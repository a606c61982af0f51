"""The review app: listen to a dataset's concept sets and record verdicts that the dataset keeps. It sits on top
of the generator (it reads datasets and writes a run directory's reviews file); nothing below imports it."""
