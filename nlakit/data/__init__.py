"""The data pipeline: corpora, positions, extraction, teachers, training tables."""
