"""Camera-gateway simulator and synthetic scene renderer."""
