"""Study 2: tabular Q-learning on the branching MDP -- the staircase and convergence over seeds."""
from jaxq.studies.tabular_q import main

if __name__ == "__main__":
    main()
