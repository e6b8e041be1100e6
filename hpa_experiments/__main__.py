from hpa_experiments.cli import main

main()
