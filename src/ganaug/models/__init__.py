"""Plain `nn.Module`s in registries: classifiers and conditional generators."""
