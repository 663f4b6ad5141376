"""corpusmill.train"""
