"""The BentoML service of RxVision (service.py), its model-store helper and traffic logging."""
