"""Raw dataset layouts -> stores: `frames` (VIPER, Synthia-Seq, Cityscapes-Seq) and `bddvid` (BDD10k + BDD100K)."""
