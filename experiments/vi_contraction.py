"""Study 1: value iteration contracts at rate gamma on the branching MDP (every k, many Q_0)."""
from jaxq.studies.vi_contraction import main

if __name__ == "__main__":
    main()
