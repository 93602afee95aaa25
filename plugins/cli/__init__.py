"""The deploy-side commands (build_engine, make_triton_repo, triton_client, verify); scripts/<command>.py
are thin shims calling their `main(argv)`."""
