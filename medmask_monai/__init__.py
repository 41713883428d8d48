"""MONAI integration for medmask (see issue: LoadMask, MaskReader, MaskArchiveDataset)."""
