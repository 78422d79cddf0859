"""VAE-GAN hybrid benchmark: data, networks, methods, training, metrics, reports."""
