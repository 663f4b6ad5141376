"""corpusmill.evaluate"""
