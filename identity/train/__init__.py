"""Training the recognizer on an organization's own people (CosFace / ArcFace margins).

Imports torch: only the training commands load this package.
"""
