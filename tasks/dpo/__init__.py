"""The DPO family's code that TRL does not have (SimPO's reference-free loss); DPO, IPO and KTO are TRL's trainers."""
