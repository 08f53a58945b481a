"""Exports of a trained adapter (issue 24): a merged Hugging Face folder, a GGUF file for llama.cpp,
the GGUF plus an Ollama ``Modelfile``; and the check that the adapter folder itself loads in vLLM.

Pure file work lives here, with no database or object store: :mod:`merge` (PEFT
``merge_and_unload`` → standalone folder + model card), :mod:`gguf_file` (the ``gguf`` package's
``GGUFWriter`` for the llama family, f16 and q8_0), :mod:`modelfile` (Ollama), :mod:`vllm`
(adapter checks and the ``vllm serve`` line), :mod:`card` (the model card). The service that
records exports, runs them as Ray jobs and stores them is :mod:`backend.exports.service`.
"""
