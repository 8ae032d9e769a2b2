"""Walking a collection of recordings: finding audio files, batching work over them."""
