"""Extraction: what text of a chunk the model reads, how uncached chunks are scheduled and paid
for once, and the step that turns the chunk stream into facts with provenance."""
