"""Study 3: cosine function approximation on the branching MDP plateaus above its projection floor."""
from jaxq.studies.cosine_fa import main

if __name__ == "__main__":
    main()
