"""Tools that make Replit-architecture checkpoints: tokenizer training, export, demo training."""
