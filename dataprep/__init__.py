"""corpusmill.dataprep"""
