"""What every layer of latentcast shares and none of them owns: the error hierarchy (``latentcast.errors``)."""
