"""Parts of domain-adaptive self-training, each small and tested alone; `vdatrain.methods` composes them."""
