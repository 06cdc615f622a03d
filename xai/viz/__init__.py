"""Pictures, drawn with matplotlib's Agg backend (no display needed), imported lazily."""
