"""Study 5: discount sweep on chain-64 -- does the MLP's error grow as gamma -> 1?"""
from jaxq.studies.discount_sweep import main

if __name__ == "__main__":
    main()
