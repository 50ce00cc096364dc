"""NegCLIP: CLIP fine-tuned with hard negatives (Yuksekgonul et al., ICLR 2023)."""
