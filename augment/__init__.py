"""corpusmill.augment"""
