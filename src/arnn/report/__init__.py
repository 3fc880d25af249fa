"""The collector's rooms (`arnn-collect`, arnn.collect): reading job directories (`jobs`),
choosing each task's configuration by the one rule of a grid point's score (`choose`), the
tables (`tables`), the figures (`figures`) and the paper's numbers (`paper`)."""
