"""Study 4: chain depth -- is the 257-parameter MLP's error larger and more volatile on deeper chains?"""
from jaxq.studies.chain_depth import main

if __name__ == "__main__":
    main()
