"""Native implementations of LDM-style video models (LVDM, VideoCrafter) loadable from their checkpoints."""
