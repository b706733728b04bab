"""Composing the portrait: consolidate the facts as they arrive, reduce them under the budget,
write MEMORY, and regenerate the five sections."""
