"""Networks: backbones, aggregators and the model that joins them."""
