"""ganaug: does synthetic data from a conditional GAN make an image classifier better, and when?"""
