"""identity: face identity search.

Importing this package stays cheap on purpose: heavy libraries (torch, dlib,
onnxruntime, qdrant) are imported inside the modules that need them.
"""

__version__ = "0.1.0"
