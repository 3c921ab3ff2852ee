"""HARNet backbone, the ZeroHAR model, checkpoint loading."""
