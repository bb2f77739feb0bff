"""ZenML stack definitions for RxVision and the code that registers them."""
