"""Tools that look inside a trained model: hooks, logit lens, ablation, embeddings, neurons, induction heads."""
