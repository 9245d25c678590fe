"""Deployment: the compose file, the image, and the same topology run natively."""
