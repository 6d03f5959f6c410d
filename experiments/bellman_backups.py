"""Study 6: Bellman backups on chain-5 -- after k sweeps exactly the last k states are exact."""
from jaxq.studies.bellman_backups import main

if __name__ == "__main__":
    main()
